"""TF Serving's gRPC PredictionService and ModelService on 127.0.0.1."""

from __future__ import annotations

import time
from concurrent import futures
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from autotune.servers.local.metrics import ServerMetrics
from autotune.servers.local.servable import RequestError, Servable

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE, 404: grpc.StatusCode.NOT_FOUND}


class _Base:
    def __init__(self, servables: dict[str, Servable]) -> None:
        self.servables = servables

    def _servable(self, spec: Any, context: grpc.ServicerContext) -> Servable:
        """The servable SPEC names; NOT_FOUND, as TF Serving answers, when there is none."""
        version = spec.version.value if spec.HasField("version") else None
        servable = self.servables.get(spec.name)
        if servable is None or (version is not None and version != servable.version):
            what = f"Specific({spec.name}, {version})" if version is not None else f"Latest({spec.name})"
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {what}")
        return servable  # type: ignore[return-value]  (abort raises)


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata."""

    def __init__(self, servables: dict[str, Servable], metrics: ServerMetrics | None) -> None:
        super().__init__(servables)
        self.metrics = metrics

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        import tensorflow as tf

        started = time.perf_counter()
        servable = self._servable(request.model_spec, context)
        status = "OK"
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            signature = request.model_spec.signature_name or "serving_default"
            outputs = servable.predict(signature, inputs)
        except RequestError as exc:
            status = "INVALID_ARGUMENT" if exc.status == 400 else "UNAVAILABLE"
            context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))
        except (TypeError, ValueError) as exc:
            status = "INVALID_ARGUMENT"
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad input tensor: {exc}")
        finally:
            if self.metrics is not None:
                self.metrics.observe(request.model_spec.name, "predict", "GRPC", status, time.perf_counter() - started)
        wanted = set(request.output_filter) or set(outputs)
        unknown = wanted - set(outputs)
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"output_filter names unknown outputs {sorted(unknown)}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        servable = self._servable(request.model_spec, context)
        if list(request.metadata_field) != ["signature_def"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "metadata_field must be exactly ['signature_def']")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(sig_map)
        return response


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus, so gRPC clients can wait for AVAILABLE."""

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        servable = self._servable(request.model_spec, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = servable.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


def serve_grpc(
    servables: dict[str, Servable],
    port: int,
    max_threads: int,
    metrics: ServerMetrics | None,
    socket_path: str = "",
) -> grpc.Server:
    """Bind 127.0.0.1:PORT (unless 0) and the UNIX socket SOCKET_PATH (if given); OSError if either fails."""
    server = grpc.server(
        # TF Serving caps its gRPC server's threads at --grpc_max_threads (server.cc ResourceQuota::SetMaxThreads).
        futures.ThreadPoolExecutor(max_workers=max_threads),
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(servables, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(servables), server)
    listeners = ([f"127.0.0.1:{port}"] if port else []) + ([f"unix:{socket_path}"] if socket_path else [])
    for address in listeners:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"gRPC address {address} is busy or unavailable")
    server.start()
    return server
