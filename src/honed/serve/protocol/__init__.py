"""The Open Inference Protocol (KServe V2): request/response types, the datatype table and the wire codecs.

:mod:`.types` holds the transport-neutral values; :mod:`.datatypes` the V2 <-> numpy <-> ONNX table;
:mod:`.rest` the JSON codec and binary tensor extension; :mod:`.grpc_codec` the gRPC messages.
"""

from honed.serve.protocol.datatypes import DATATYPES, from_numpy, from_onnx, numpy_dtype
from honed.serve.protocol.types import InferRequest, InferResponse, RequestedOutput, Tensor

__all__ = [
    "DATATYPES",
    "InferRequest",
    "InferResponse",
    "RequestedOutput",
    "Tensor",
    "from_numpy",
    "from_onnx",
    "numpy_dtype",
]
