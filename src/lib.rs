pub mod ci;
pub mod env;
pub mod error;
pub mod image;
pub mod secret;
