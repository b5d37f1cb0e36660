"""Reading CT images and reasoning about their geometry, independent of any orchestrator."""
