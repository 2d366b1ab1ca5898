//! The reference for the `/auth` benchmark: axum's hello world on the same runtime
//! settings as `ssogate serve` (`#[tokio::main]`). Prints its address, serves until killed.
//!
//!     cargo build --release --example hello && target/release/examples/hello [ADDR]

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("{}", listener.local_addr().expect("address"));
    axum::serve(listener, app).await.expect("serve");
}
