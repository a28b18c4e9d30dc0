//! An accepted upgrade (WebSocket): once the `101` is written, the client
//! connection and the upstream one are spliced, bytes passed both ways
//! unparsed until either side closes.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::super::handler::ConnCtx;
use super::inbound::{ClientStream, Inbound};

/// Splices the client connection with the upstream's `up` (the bytes the
/// upstream sent behind its `101` go to the client first, those the client
/// sent behind its request go to the upstream first). The drain waits for
/// the stream, up to its deadline.
pub(super) async fn splice<S: ClientStream>(
    ctx: &ConnCtx,
    conn: Rc<RefCell<Inbound<S>>>,
    (mut up, early): (TcpStream, BytesMut),
) {
    let Ok(conn) = Rc::try_unwrap(conn) else {
        tracing::debug!(client = %ctx.peer, "upgraded connection still in use");
        return;
    };
    let (mut client, sent) = conn.into_inner().into_parts();
    let _draining = ctx.worker.upgraded.subscribe();
    let peer = ctx.peer;
    let started = async {
        if !early.is_empty() {
            client.write_all(&early).await?;
        }
        if !sent.is_empty() {
            up.write_all(&sent).await?;
        }
        tokio::io::copy_bidirectional(&mut client, &mut up).await
    };
    match started.await {
        Ok((up, down)) => tracing::debug!(client = %peer, up, down, "upgraded stream closed"),
        Err(e) => tracing::debug!(client = %peer, error = %e, "upgraded stream failed"),
    }
}
