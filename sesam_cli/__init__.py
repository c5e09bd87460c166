"""sesam's command-line interface: a thin click layer over the ``stages`` library."""
