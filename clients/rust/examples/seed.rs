//! The seed tutorial's Step 3, as written, against a running server:
//!
//!   make run                                   (another terminal: the demo server on :8080)
//!   cd clients/rust && cargo run --example seed
//!
//! BIGPICTURE_URL, BIGPICTURE_PRODUCT, BIGPICTURE_TENANT and BIGPICTURE_USER override the seed's
//! values (the demo data's tenant is customer-tenant-id).
use bigpicture_sdk::Client;
use bigpicture_sdk::Subject;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let url = env("BIGPICTURE_URL", "http://127.0.0.1:8080");
    let product = env("BIGPICTURE_PRODUCT", "your-product-id");
    let tenant = env("BIGPICTURE_TENANT", "your-tenant-id");
    let user = env("BIGPICTURE_USER", "user_123");

    let client = Client::builder()
        .base_url(url)
        .build()?;
    let lease = client.request_lease(
        &product,
        &tenant,
        Subject::user(user),
    ).await?;

    println!("lease {} until {} features {:?}", lease.lease_id, lease.expires_at, lease.features);
    let renewed = client.renew(&lease).await?;
    println!("renewed {} until {}", renewed.lease_id, renewed.expires_at);
    client.release(&lease.lease_id).await?;
    println!("released {}", lease.lease_id);
    Ok(())
}
