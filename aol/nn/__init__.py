"""The layer library's modules: the layer contract (``contract``), AOL's layers
(``layers``), rescaling and initialisation, 1-Lipschitz building blocks (``modules``),
guaranteed convolution-norm bounds (``bounds``), the shared parts of residual layers
(``residual``) and eval-mode caches of weight transforms (``cache``)."""
