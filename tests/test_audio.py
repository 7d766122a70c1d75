"""Audio loading, validation, mu-law and the spectral front-ends."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from repr_asr.audio import (
    AudioError,
    SpectralFrontEnd,
    decode_audio,
    load_audio,
    mu_law_decode,
    mu_law_encode,
    save_audio,
)

SR = 16000


def tone(seconds=0.5, sr=SR, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_load_audio_formats(tmp_path, ext):
    path = tmp_path / f"a.{ext}"
    save_audio(path, tone(), SR)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SR // 2) <= 1
    # Lossy formats change samples, but a 440 Hz tone keeps its energy.
    assert np.isclose(np.sqrt((audio**2).mean()), 0.3 / np.sqrt(2), rtol=0.1)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg needed to write mp3")
def test_load_audio_mp3(tmp_path):
    wav = tmp_path / "a.wav"
    save_audio(wav, tone(1.0), SR)
    mp3 = tmp_path / "a.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(mp3)], check=True)
    audio = load_audio(mp3)
    assert audio.ndim == 1 and abs(len(audio) - SR) < 0.1 * SR


def test_stereo_is_downmixed(tmp_path):
    left, right = tone(freq=440), tone(freq=880)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), SR)
    audio = load_audio(path)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-4)


def test_resampled_from_8k(tmp_path):
    path = tmp_path / "narrow.wav"
    soundfile.write(path, tone(1.0, sr=8000, freq=300), 8000)
    audio = load_audio(path, sampling_rate=SR)
    assert len(audio) == SR
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SR / len(audio) - 300) < 5


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + b"\x00garbage" * 10)
    with pytest.raises(AudioError, match="broken.flac"):
        load_audio(path)


def test_empty_file_names_the_file(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(ValueError, match="empty.wav.*empty"):
        load_audio(path)


def test_nan_file_names_the_file(tmp_path):
    path = tmp_path / "nan.wav"
    data = tone()
    data[100] = np.nan
    soundfile.write(path, data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav.*NaN"):
        load_audio(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nowhere.wav"):
        load_audio(tmp_path / "nowhere.wav")


def test_decode_audio_cells(tmp_path):
    path = tmp_path / "a.flac"
    save_audio(path, tone(), SR)
    from_path = decode_audio(str(path))
    from_bytes = decode_audio({"path": "a.flac", "bytes": path.read_bytes()})
    from_array = decode_audio({"array": tone(sr=8000), "sampling_rate": 8000})
    np.testing.assert_array_equal(from_path, from_bytes)
    assert len(from_array) == SR // 2
    with pytest.raises(AudioError):
        decode_audio(42)


def test_mu_law_round_trip():
    x = torch.linspace(-1, 1, 1001)
    classes = mu_law_encode(x)
    assert classes.min() == 0 and classes.max() == 255
    # 8-bit mu-law: the error is relative to the amplitude, a few percent at most.
    y = mu_law_decode(classes)
    assert torch.all((y - x).abs() <= 0.04 * x.abs() + 2e-3)


@pytest.mark.parametrize("kind", ["mfcc", "fbank"])
def test_front_end_matches_torchaudio(kind):
    x = torch.randn(2, 12345)
    melkwargs = dict(n_fft=512, win_length=400, hop_length=160, n_mels=80, pad_mode="constant")
    if kind == "mfcc":
        ref = torchaudio.transforms.MFCC(SR, 13, log_mels=True, melkwargs=melkwargs)(x)
        ours = SpectralFrontEnd("mfcc")(x)[:, :, :13].transpose(1, 2)
    else:
        ref = torch.log(torchaudio.transforms.MelSpectrogram(SR, **melkwargs)(x) + 1e-6)
        ours = SpectralFrontEnd("fbank")(x).transpose(1, 2)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("kind,dim", [("mfcc", 39), ("fbank", 80), ("waveform", 160)])
def test_front_end_shapes_and_lengths(kind, dim):
    fe = SpectralFrontEnd(kind)
    for samples in (1, 159, 160, 16000):
        out = fe(torch.randn(1, samples))
        assert out.shape == (1, int(fe.frame_lengths(torch.tensor(samples))), dim)


def test_front_end_builds_on_meta_device():
    with torch.device("meta"):
        fe = SpectralFrontEnd("mfcc")
    assert len(list(fe.parameters())) == 0 and len(list(fe.buffers())) == 0


# ------------------------------------------------------------------------------------------------
# Bad input: errors name the file; arrays are scaled and downmixed as files are.


def _truncated_flac(path, fraction=0.6):
    save_audio(path, tone(1.0), SR)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])  # the header survives: soundfile.info still works
    return path


def test_truncated_flac_error_names_utterance_and_file(tmp_path):
    path = _truncated_flac(tmp_path / "cut.flac")
    assert soundfile.info(str(path)).frames == SR  # what load_corpus reads passes
    with pytest.raises(AudioError, match=r"^utterance 1-2-3 \(.*cut\.flac\): cannot decode audio") as caught:
        decode_audio(str(path), name="utterance 1-2-3")
    assert isinstance(caught.value.__cause__, soundfile.LibsndfileError)  # the decoder's own reason is kept
    with pytest.raises(AudioError, match=r"utterance 1-2-3 \(cut\.flac\): cannot decode"):
        decode_audio({"path": "cut.flac", "bytes": path.read_bytes()}, name="utterance 1-2-3")


def test_infinite_samples_name_the_file(tmp_path):
    path = tmp_path / "inf.wav"
    data = tone()
    data[[3, 7]] = [np.inf, -np.inf]
    soundfile.write(path, data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"inf\.wav: audio contains NaN or infinite samples \(2 of"):
        load_audio(path)


def test_float_audio_off_the_unit_scale_is_refused(tmp_path):
    loud = tmp_path / "loud.wav"
    soundfile.write(loud, 50.0 * tone(), SR, subtype="FLOAT")  # peak 15
    with pytest.raises(AudioError, match=r"loud\.wav: float audio is not on the \[-1, 1\] scale \(peak 15"):
        load_audio(loud)
    with pytest.raises(AudioError, match=r"utterance u1: float audio is not on the \[-1, 1\] scale"):
        decode_audio({"array": 50.0 * tone(), "sampling_rate": SR}, name="utterance u1")
    # Slightly clipped float audio (peak 1.2) is legitimate and loads unchanged.
    clipped = tmp_path / "clipped.wav"
    soundfile.write(clipped, 4.0 * tone(), SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(clipped), 4.0 * tone())


@pytest.mark.parametrize("dtype,subtype", [(np.int16, "PCM_16"), (np.int32, "PCM_32"), (np.uint8, "PCM_U8")])
def test_integer_array_cells_are_scaled_like_pcm_files(tmp_path, dtype, subtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    samples = rng.integers(info.min, info.max, size=4000, endpoint=True).astype(dtype)
    path = tmp_path / "pcm.wav"
    if dtype == np.uint8:  # soundfile takes no uint8 arrays: write floats that land on exact 8-bit codes
        soundfile.write(path, (samples.astype(np.float64) - 128) / 128, SR, subtype=subtype)
        assert path.read_bytes()[-samples.size :] == samples.tobytes()  # the file holds these very bytes
    else:  # integer arrays are written as they are
        soundfile.write(path, samples, SR, subtype=subtype)
    from_file = load_audio(path)  # libsndfile's scaling of PCM files is the reference
    from_cell = decode_audio({"array": samples, "sampling_rate": SR})
    assert from_cell.dtype == np.float32 and np.abs(from_cell).max() <= 1.0
    np.testing.assert_allclose(from_cell, from_file, atol=1e-7)


def test_integer_array_without_pcm_scale_is_refused():
    with pytest.raises(AudioError, match=r"utterance u2: integer samples of dtype int64 have no PCM scale"):
        decode_audio({"array": np.arange(100), "sampling_rate": SR}, name="utterance u2")


def test_multichannel_cells_are_downmixed_in_either_layout(tmp_path):
    left, right = tone(freq=440), tone(freq=880)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    from_file = load_audio(path)
    channels_last = decode_audio({"array": np.stack([left, right], axis=1), "sampling_rate": SR})  # soundfile's layout
    channels_first = decode_audio({"array": np.stack([left, right]), "sampling_rate": SR})  # datasets' layout
    assert channels_last.shape == channels_first.shape == left.shape
    np.testing.assert_allclose(channels_last, from_file, atol=1e-7)
    np.testing.assert_allclose(channels_first, from_file, atol=1e-7)
    with pytest.raises(AudioError, match=r"utterance u3: cannot tell channels from samples in audio of shape \(4, 4\)"):
        decode_audio({"array": np.zeros((4, 4), np.float32), "sampling_rate": SR}, name="utterance u3")


def test_native_rate_is_kept_without_sampling_rate(tmp_path):
    path = tmp_path / "narrow.wav"
    soundfile.write(path, tone(1.0, sr=8000), 8000)
    assert len(load_audio(path, sampling_rate=None)) == 8000
    assert len(decode_audio(str(path), sampling_rate=None)) == 8000
