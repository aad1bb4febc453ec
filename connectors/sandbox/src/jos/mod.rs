//! JOS (JD open platform) gateway simulator at `/routerjson`.
