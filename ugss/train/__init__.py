"""Training: data, ResUNet, UGSS losses and schedules, teacher update, loop, evaluation (torch)."""
