"""What tests of every package share: event builders, live workers, reliability checks, hostile input."""
