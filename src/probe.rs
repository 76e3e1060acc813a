//! `jetwatch probe`: which backends this host offers, and why the others are missing.
