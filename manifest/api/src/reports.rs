//! Typed answers of the API routes that are not plain views.
