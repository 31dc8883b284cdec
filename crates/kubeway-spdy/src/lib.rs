//! SPDY/3.1 framing and a multiplexed session; knows nothing about Kubernetes.
//!
//! The crate has two layers:
//!
//! - **Framing** ([`codec`], [`frame`], [`header_block`], [`dictionary`]): every SPDY/3 frame type,
//!   an incremental [`FrameDecoder`] that accepts bytes in any chunking, and a [`FrameEncoder`]
//!   that emits each frame as one contiguous buffer. Header blocks use one zlib context per
//!   direction for the life of the connection, primed with the SPDY/3 dictionary.
//! - **Session** ([`session`]): a [`Session`] multiplexes [`Stream`]s (tokio `AsyncRead +
//!   AsyncWrite`) over any transport, in the client (odd stream ids) or server (even ids) role,
//!   with PING, GOAWAY, keepalive and per-stream back-pressure that does not depend on the peer
//!   sending WINDOW_UPDATE.
//!
//! ```no_run
//! # async fn demo(io: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use kubeway_spdy::{Config, Role, Session};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (session, _incoming) = Session::new(io, Role::Client, Config::default());
//! let mut stream = session
//!     .open_stream(vec![("x-purpose".into(), "echo".into())], false)
//!     .await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // half-close: DATA with FLAG_FIN
//! let mut reply = Vec::new();
//! stream.read_to_end(&mut reply).await?;
//! # Ok(()) }
//! ```

pub mod codec;
pub mod dictionary;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod header_block;
pub mod session;
pub mod tunnel;

pub use codec::{DecoderLimits, FrameDecoder, FrameEncoder};
pub use error::{CloseReason, DecodeError, EncodeError, SessionError, StreamError};
pub use frame::{Frame, GoAwayStatus, Headers, RstStatus};
pub use session::{Config, Incoming, IncomingStream, Keepalive, Role, Session, Stream};
pub use tunnel::MessageTunnel;
