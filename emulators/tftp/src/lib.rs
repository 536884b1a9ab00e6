//! TFTP (UDP 69), as a locked-down tftpd: every read request is answered
//! "File not found", every write request "Access violation", from a fresh
//! port (the server's transfer ID) as a real tftpd does; the exchange then
//! belongs to that port, so the flow on port 69 ends after one answer. Each
//! request is logged as a `request` event (`op`, `filename`, `mode`,
//! `options`); anything else as `unknown_opcode`. A datagram that does not
//! even decode (random bytes, a truncated request) is logged and gets no
//! answer: answering garbage from forged sources would make the decky a
//! reflector. Persona keys: none.

#![forbid(unsafe_code)]

pub mod codec;

use std::sync::Arc;

use decnet_emu_sdk::{
    BoxFuture, Close, Emulator, Kind, Port, ServeError, Service, ServiceInfo, SessionCx, Transport, UdpFlow, fields,
};

use crate::codec::{Op, Packet, decode, encode_error, error_code};

/// The TFTP emulator.
pub struct Tftp;

impl Emulator for Tftp {
    fn slug(&self) -> &'static str {
        "tftp"
    }

    fn serves(&self, port: &Port) -> bool {
        port.transport == Transport::Udp
    }

    fn prepare(&self, _service: &ServiceInfo) -> Result<Arc<dyn Service>, ServeError> {
        Ok(Arc::new(TftpService))
    }
}

struct TftpService;

impl Service for TftpService {
    fn serve_udp(self: Arc<Self>, mut flow: UdpFlow, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            let Some(datagram) = flow.recv().await else {
                return Ok(Close::Timeout);
            };
            if let Some(reply) = answer(&datagram, &cx) {
                // A new socket, a new port: the server's transfer ID (RFC 1350 §4).
                let transfer = cx.net().udp_socket(0).await?;
                transfer.send_to(&reply, flow.peer()).await?;
            }
            Ok(Close::Done)
        })
    }
}

/// Logs one datagram and returns the reply to send, if any.
fn answer(datagram: &[u8], cx: &SessionCx) -> Option<Vec<u8>> {
    match decode(datagram) {
        Ok(Packet::Request {
            op,
            filename,
            mode,
            options,
        }) => {
            cx.emit(
                Kind::Request,
                fields! {
                    "op" => op.as_str(),
                    "filename" => String::from_utf8_lossy(&filename),
                    "mode" => String::from_utf8_lossy(&mode).to_ascii_lowercase(),
                    "options" => options,
                },
            );
            Some(match op {
                Op::Read => encode_error(error_code::FILE_NOT_FOUND, "File not found"),
                Op::Write => encode_error(error_code::ACCESS_VIOLATION, "Access violation"),
            })
        }
        // Stray transfer packets to port 69: a real server ignores them.
        Ok(Packet::Data { .. } | Packet::Ack { .. } | Packet::Error { .. }) => None,
        Ok(Packet::Unknown { opcode }) => {
            cx.emit(
                Kind::UnknownOpcode,
                fields! { "opcode" => opcode, "data" => hex(datagram) },
            );
            Some(encode_error(error_code::ILLEGAL_OPERATION, "Illegal TFTP operation"))
        }
        Err(error) => {
            cx.emit(
                Kind::UnknownOpcode,
                fields! { "error" => error.to_string(), "data" => hex(datagram) },
            );
            None
        }
    }
}

/// The first 32 bytes, in hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect()
}
