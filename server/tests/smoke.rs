mod common;
use common::*;

#[tokio::test]
async fn m1_broadcast_reaches_others() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut a = login(addr, "ann").await;
    let mut b = login(addr, "bob").await;
    wait_online(&server, 2).await;
    a.send("hello").await;
    assert_eq!(b.text().await, "hello -- FROM ann");
    a.expect_silence(std::time::Duration::from_millis(100))
        .await;
    assert_eq!(wait_metric(addr, "chat_deliveries_out_total", 1).await, 1);
}
