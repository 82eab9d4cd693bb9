"""A real engine that crashes on one input: a wrapper that kills itself with SIGSEGV, as a segfaulting
espeak-ng does, when the text contains CRASH, and runs the real espeak-ng otherwise."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.binaries import require_binary

#: Text that makes the wrapped espeak-ng crash.
CRASH = "CRASH"


def crashing_espeak(directory: Path) -> dict[str, str]:
    """Write the wrapper into ``directory`` and return an environment whose PATH finds it first."""
    real = require_binary("espeak-ng", "espeak-ng")
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "espeak-ng"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --stdin "*) ;; *) exec ' + real + ' "$@" ;; esac\n'
        'text="$(cat)"\n'
        f'case "$text" in *{CRASH}*) kill -SEGV $$ ;; esac\n'
        f'printf "%s" "$text" | exec {real} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    assert shutil.which("espeak-ng", path=str(directory)) == str(wrapper)
    return {"PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"}
