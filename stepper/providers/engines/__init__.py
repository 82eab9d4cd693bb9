"""Local engines behind the local providers: OCR (tesseract), computer vision (OpenCV), speech (espeak-ng)."""
