"""The runtime layer: what the stages share to run a model. Loading a prepared model directory
(models), the generation backends, transformers and vLLM (backends), the summed log-probability of
answer choices (scoring: the evaluation's rank classification, backtranslation's ranked rating),
and the device a job was configured for (device). It imports the core only."""
