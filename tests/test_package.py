import subprocess
import sys


def test_importing_vidclip_does_not_import_ray_or_torch():
    code = "import sys, vidclip; print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_importing_vidclip_makes_torch_threads_wait_passively_unless_told_otherwise():
    """torch's OpenMP threads would spin on the cores the decode children need (vidclip/__init__.py)."""
    import os

    code = "import os, vidclip; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=e).stdout.strip()
    assert run(env) == "PASSIVE"
    assert run(dict(env, OMP_WAIT_POLICY="ACTIVE")) == "ACTIVE"  # the user's choice is kept


def test_public_api_is_curated():
    import vidclip

    for name in ("open", "Library", "Hit", "Hits", "ModelConfig", "SamplingConfig", "VidclipError"):
        assert hasattr(vidclip, name)
    assert issubclass(vidclip.StoreMismatchError, vidclip.VidclipError)
