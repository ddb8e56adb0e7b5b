//! `demo-backend name=addr [name=addr ...]`: runs the demo backends of `make run`
//! (see `sticky_proxy::demo`) until interrupted. Prints one line per backend with the address
//! it is bound to (port 0 in `addr` lets the system choose one).

#[tokio::main]
async fn main() {
    let mut tasks = Vec::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: demo-backend iis1=127.0.0.1:9001 [iis2=127.0.0.1:9002 ...]");
        std::process::exit(2);
    }
    for arg in args {
        let Some((name, addr)) = arg.split_once('=') else {
            eprintln!("demo-backend: expected name=addr, got {arg:?}");
            std::process::exit(2);
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("demo-backend: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let bound = listener
            .local_addr()
            .map_or_else(|_| addr.to_string(), |a| a.to_string());
        println!("demo backend {name} listening on http://{bound}");
        tasks.push(tokio::spawn(sticky_proxy::demo::serve(
            listener,
            name.to_string(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
}
