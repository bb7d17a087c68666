"""GANs on 2-D mixtures: the nets (:mod:`.nets`), losses and penalties (:mod:`.losses`), mode
metrics (:mod:`.metrics`), figures (:mod:`.plots`) and the training task (:mod:`.task`)."""
