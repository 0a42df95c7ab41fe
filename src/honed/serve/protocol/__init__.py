"""The Open Inference Protocol (KServe V2): request/response types, the datatype table and the wire codecs.

:mod:`.types` holds the transport-neutral values (infer request and response, server, model and tensor
metadata); :mod:`.datatypes` the V2 <-> numpy <-> ONNX table; :mod:`.rest` the JSON codec and binary tensor
extension; :mod:`.grpc_codec` the gRPC messages.
"""

from honed.serve.protocol.datatypes import DATATYPES, from_numpy, from_onnx, numpy_dtype
from honed.serve.protocol.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestedOutput,
    ServerMetadata,
    Tensor,
    TensorMetadata,
)

__all__ = [
    "DATATYPES",
    "InferRequest",
    "InferResponse",
    "ModelMetadata",
    "RequestedOutput",
    "ServerMetadata",
    "Tensor",
    "TensorMetadata",
    "from_numpy",
    "from_onnx",
    "numpy_dtype",
]
