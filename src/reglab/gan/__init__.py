"""GANs on 2-D mixtures: the nets (:mod:`.nets`), losses and penalties (:mod:`.losses`), mode
metrics (:mod:`.metrics`), figures (:mod:`.plots`), the training task (:mod:`.task`), its config
section (:mod:`.config`) and the mode table of finished runs (:mod:`.modes`)."""
