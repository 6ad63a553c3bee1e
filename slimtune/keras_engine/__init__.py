"""The Keras 3 training engine: trains the Keras mirrors of slim nets with research/slim's
training semantics (optimizers, learning-rate schedules, BatchNorm statistics), so that K
steps here equal K steps of the slim engine."""
