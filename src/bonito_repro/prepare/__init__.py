"""The first stage: the inputs every later job reads offline. Base model directories, downloaded,
converted or built (models: ``python -m bonito_repro models``), and each dataset's unannotated
passages and labelled test split (target_data: ``python -m bonito_repro target-data``)."""
