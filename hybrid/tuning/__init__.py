"""Learning the served models: question sets, labelled pairs of answers, the judge, and `hybrid tune`
(train the router and a verifier per tier on the models actually served, calibrate every threshold
together to a stated target, and store the result as a registry version)."""
