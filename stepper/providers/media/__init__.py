"""Safe media input: images from inline bytes, allowed paths or guarded URLs, checked before decoding."""
