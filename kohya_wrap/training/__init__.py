"""Training under supervision: the run itself (supervise), its typed record (record), what it has
reported so far (state), resuming with true step numbers (resume), and how it is shown (dashboard)."""
