"""The serving endpoint (``infaas-serve``): the real mode behind the Open Inference Protocol.

- :mod:`.protocol`: KServe v2 request parsing and response encoding (JSON and the binary
  tensor extension that Triton's clients use);
- :mod:`.names`: model-less names (variant, architecture, ``task-dataset``) to requirements;
- :mod:`.models`: what each servable variant takes and returns (read from its ONNX file);
- :mod:`.bridge`: the cluster on wall-clock time in its own thread, and asyncio futures for
  each query's outcome;
- :mod:`.registry`: registering a model while serving (online re-profiling from served
  batches is the core's, :mod:`infaas_sim.reprofile`);
- :mod:`.telemetry`: the Prometheus metrics;
- :mod:`.app`: the FastAPI routes; :mod:`.server`: building it all from config and running
  uvicorn, draining on shutdown and writing the outputs;
- :mod:`.client`: ``infaas-load``'s open-loop replay; :mod:`.overhead`: the HTTP overhead
  benchmark against a bare onnxruntime loop.
"""
