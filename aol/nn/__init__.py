"""The layer library's modules: the layer contract (``contract``), AOL's layers
(``layers``), rescaling and initialisation, 1-Lipschitz building blocks (``modules``)
and guaranteed convolution-norm bounds (``bounds``)."""
