"""Cloud-side Prefect flows and their tasks: drift, labelling, dataset, retrain, release."""
