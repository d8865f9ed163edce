"""Speech and language: recognition, synthesis, and intent understanding (nlu/)."""
