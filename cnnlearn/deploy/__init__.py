"""Deployment: export, a TF-Serving-compatible server, monitoring (chapter 8).

``cnnlearn.deploy.export``   SavedModel in TF Serving's layout, TFLite, ONNX
``cnnlearn.deploy.parity``   every exported format against the Keras model
``cnnlearn.deploy.server``   FastAPI + uvicorn with TF Serving's REST API
``cnnlearn.deploy.client``   ``predict(url, model, images)`` against either server
``cnnlearn.deploy.monitor``  input statistics and drift for Prometheus
``cnnlearn.deploy.pipeline`` ``cnnlearn deploy``: evaluate, gate, export, serve

Submodules are imported on demand: the LiteRT server never imports TensorFlow.
"""
