"""The experiment engine: data, training, certification runs, audits, measurement, the CLI.

It imports the layer library (``aol`` outside ``aol.engine``) and needs the ``engine``
extra (torchvision, scikit-learn); the library never imports it.
"""
