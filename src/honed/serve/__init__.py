"""Serving: a KServe V2 (Open Inference Protocol) server with dynamic batching, model instances and metrics."""
