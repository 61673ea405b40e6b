//! Kavro's shared vocabulary: the wire types of every relay route, the rules for
//! valid input, and (in [`crypto`]) the end-to-end envelope.
//!
//! The relay (`kavro-server`) and the client (`kavro`) both depend on this crate,
//! so the two cannot disagree on a field name or a limit. With the `openapi`
//! feature the same types also describe themselves to poem-openapi, which is
//! how the server's `/openapi.json` documents exactly what the client parses.
#![forbid(unsafe_code)]

pub mod api;
pub mod attachment;
pub mod crypto;
pub mod ids;
pub mod strings;
pub mod v2;
pub mod validate;

pub use ids::{DeviceId, MessageId, UserId};

/// Whether a concrete type implements `Debug`, decided at compile time: the
/// inherent constant, which exists only when the bound holds, shadows the
/// trait's. For tests (here and in the relay and the client) that a type
/// holding a secret has no `Debug` to leak it through. A macro emits no code
/// where it is not used, so release builds carry nothing of it.
#[doc(hidden)]
#[macro_export]
macro_rules! implements_debug {
    ($type:ty) => {{
        #[allow(dead_code)]
        trait Fallback {
            const IMPLS: bool = false;
        }
        struct Probe<T: ?Sized>(::std::marker::PhantomData<T>);
        impl<T: ?Sized> Fallback for Probe<T> {}
        #[allow(dead_code)]
        impl<T: ?Sized + ::std::fmt::Debug> Probe<T> {
            const IMPLS: bool = true;
        }
        <Probe<$type>>::IMPLS
    }};
}
