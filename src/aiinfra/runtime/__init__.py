"""The serving runtime: request types, online features, the champion slot."""
