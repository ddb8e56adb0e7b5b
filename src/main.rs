//! The `sticky-proxy` binary: wiring only. Pingora's command line (`-c`, `-t`, `-d`, `-u`) →
//! [`sticky_proxy::config`] validates our `sticky:` section (before bootstrap, so `-t` covers it)
//! → [`sticky_proxy::build_server`] → run.

use pingora_core::server::configuration::{Opt, ServerConf};
use std::process::exit;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut opt = Opt::parse_args();
    let Some(path) = opt.conf.take() else {
        eprintln!("sticky-proxy: a configuration file is required: -c <file.yaml>");
        exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("sticky-proxy: cannot read {path:?}: {e}");
            exit(2);
        }
    };
    let config = match sticky_proxy::config::load_str(&text) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sticky-proxy: {path}: {e}");
            exit(2);
        }
    };
    // Parsed here rather than with `ServerConf::from_yaml`, whose error repeats the whole file
    // and hides the cause.
    let server_conf = match serde_yaml::from_str::<ServerConf>(&text)
        .map_err(|e| e.to_string())
        .and_then(|conf| conf.validate().map_err(|e| e.to_string()))
    {
        Ok(conf) => conf,
        Err(e) => {
            let first = e.lines().next().unwrap_or_default();
            eprintln!("sticky-proxy: {path}: Pingora settings: {first}");
            exit(2);
        }
    };
    let test_only = opt.test;
    let mut server = sticky_proxy::build_server(Some(opt), server_conf, &config);
    if test_only {
        println!("sticky-proxy: {path}: configuration OK");
    }
    server.bootstrap();
    server.run_forever();
}
