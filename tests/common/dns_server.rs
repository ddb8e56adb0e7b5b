//! A real DNS server in the test process (hickory-server) on a loopback port, UDP and TCP,
//! authoritative for one zone whose A and AAAA records a test changes while it runs. It can
//! answer SERVFAIL, fall silent (queries time out), or stop and start again on the same port,
//! and counts the queries it received. For the DNS discovery tests: point
//! `discovery.nameservers` at [`DnsServer::addr`].

use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::Server;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// How the server treats queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers from the zone.
    Answer = 0,
    /// Answers every query with SERVFAIL.
    ServFail = 1,
    /// Reads queries and never answers them (the resolver times out).
    Silent = 2,
    /// Answers A queries from the zone and AAAA queries with SERVFAIL.
    ServFailAaaa = 3,
}

struct Shared {
    catalog: Catalog,
    mode: AtomicU8,
    queries: AtomicUsize,
}

struct Handler(Arc<Shared>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.0.queries.fetch_add(1, SeqCst);
        let aaaa = request
            .queries
            .queries()
            .iter()
            .any(|q| q.query_type() == RecordType::AAAA);
        match self.0.mode.load(SeqCst) {
            3 if !aaaa => {
                self.0
                    .catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
            1 | 3 => {
                let response = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                match response_handle.send_response(response).await {
                    Ok(info) => info,
                    Err(_) => silent(request),
                }
            }
            2 => silent(request),
            _ => {
                self.0
                    .catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
        }
    }
}

/// What the server reports for a query it did not answer.
fn silent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// The DNS server: see the module's comment.
pub struct DnsServer {
    /// Where it listens, UDP and TCP.
    pub addr: SocketAddr,
    origin: Name,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    shared: Arc<Shared>,
    serial: AtomicU32,
    server: Option<Server<Handler>>,
}

/// The TTL of every record served: 0, so no cache holds an answer past the next round.
pub const TTL: u32 = 0;

impl DnsServer {
    /// A server authoritative for `zone` (e.g. `test.`), with no records but its SOA, on a
    /// free loopback port.
    pub async fn start(zone: &str) -> DnsServer {
        let origin = Name::from_str(zone).unwrap();
        let handler: InMemoryZoneHandler<TokioRuntimeProvider> =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str(&format!("ns.{zone}")).unwrap(),
            Name::from_str(&format!("admin.{zone}")).unwrap(),
            1,
            60,
            60,
            600,
            0,
        );
        handler
            .upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
            .await;
        let zone = Arc::new(handler);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let shared = Arc::new(Shared {
            catalog,
            mode: AtomicU8::new(Mode::Answer as u8),
            queries: AtomicUsize::new(0),
        });
        // A port free for both UDP and TCP.
        let (udp, tcp) = loop {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            if let Ok(udp) = tokio::net::UdpSocket::bind(tcp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let mut server = DnsServer {
            addr,
            origin,
            zone,
            shared,
            serial: AtomicU32::new(1),
            server: None,
        };
        server.serve(udp, tcp);
        server
    }

    fn serve(&mut self, udp: tokio::net::UdpSocket, tcp: tokio::net::TcpListener) {
        let mut server = Server::new(Handler(self.shared.clone()));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        self.server = Some(server);
    }

    /// The name `label` under the zone (`app` → `app.test.`).
    pub fn name(&self, label: &str) -> String {
        format!("{label}.{}", self.origin)
    }

    /// Replace the A and AAAA records of `name` (absolute) by `ips` at once: a query sees the
    /// old set or the new one, never a mix. No `ips`: the name has no address records.
    pub async fn set(&self, name: &str, ips: &[IpAddr]) {
        let name = Name::from_str(name).unwrap();
        let serial = self.serial.fetch_add(1, SeqCst) + 1;
        let mut records = self.zone.records_mut().await;
        for (kind, v6) in [(RecordType::A, false), (RecordType::AAAA, true)] {
            let key = RrKey::new(LowerName::new(&name), kind);
            records.remove(&key);
            let mut set = RecordSet::new(name.clone(), kind, serial);
            for ip in ips.iter().filter(|ip| ip.is_ipv6() == v6) {
                let data = match ip {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                set.insert(Record::from_rdata(name.clone(), TTL, data), serial);
            }
            if !set.is_empty() {
                records.insert(key, Arc::new(set));
            }
        }
    }

    /// Answer from the zone, with SERVFAIL, or not at all.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, SeqCst);
    }

    /// Queries received so far (answered or not).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(SeqCst)
    }

    /// Stop listening (nothing answers on the port until [`DnsServer::restart`]).
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.shutdown_gracefully().await;
        }
    }

    /// Listen again on the same port, with the same zone.
    pub async fn restart(&mut self) {
        self.stop().await;
        let udp = tokio::net::UdpSocket::bind(self.addr).await.unwrap();
        let tcp = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(udp, tcp);
    }
}
