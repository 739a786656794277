import subprocess
import sys


def test_importing_vidclip_does_not_import_ray_or_torch():
    code = "import sys, vidclip; print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_public_api_is_curated():
    import vidclip

    for name in ("open", "Library", "Hit", "Hits", "ModelConfig", "SamplingConfig", "VidclipError"):
        assert hasattr(vidclip, name)
    assert issubclass(vidclip.StoreMismatchError, vidclip.VidclipError)
