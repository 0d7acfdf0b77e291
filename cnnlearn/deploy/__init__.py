"""Deployment: export, a TF-Serving-compatible server, monitoring (chapter 8).

``cnnlearn.deploy.export``        SavedModel in TF Serving's layout, TFLite, ONNX
``cnnlearn.deploy.parity``        every exported format against the Keras model
``cnnlearn.deploy.server``        TF Serving's REST API (FastAPI, uvicorn), gRPC beside
``cnnlearn.deploy.state``         the served models, versions, labels, config reloads
``cnnlearn.deploy.transport``     uvicorn guarded against slow and hostile clients
``cnnlearn.deploy.backends``      the server's LiteRT and SavedModel backends, versions
``cnnlearn.deploy.protocol``      TF Serving's request and answer bodies
``cnnlearn.deploy.signatures``    a SavedModel's signature defs, read without TensorFlow
``cnnlearn.deploy.modelconfig``   ``--model_config_file``: models, policies, labels
``cnnlearn.deploy.grpc_service``  TF Serving's gRPC PredictionService, ModelService
``cnnlearn.deploy.batching``      server-side batching (``--enable_batching``), its file
``cnnlearn.deploy.client``        ``predict(url, model, images)`` against either server
``cnnlearn.deploy.monitor``       input statistics and drift for Prometheus
``cnnlearn.deploy.loadtest``      the server as a subprocess, and a load generator
``cnnlearn.deploy.release``       ``cnnlearn deploy``: evaluate, gate, export

An exception to the package's public-API rule (see :mod:`cnnlearn`): this
package re-exports nothing and exposes its modules only (``from cnnlearn.deploy
import server``). The LiteRT server must run without TensorFlow, and
re-exporting :mod:`~cnnlearn.deploy.release` (which imports it) here would load
TensorFlow into every process that imports the server.
"""
