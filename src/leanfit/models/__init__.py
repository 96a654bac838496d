"""The model kinds: the registry and no-pickle state (:mod:`.registry`), the exact
logistic (:mod:`.logistic`), boosted trees (:mod:`.booster`), the protocol every kind
offers (:mod:`.predictor`) and models combined from pieces (:mod:`.merge`)."""
