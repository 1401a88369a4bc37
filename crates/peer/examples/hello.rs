//! Two programs in one: `hello ws://HOST:8080 ROOM [TOKEN]` opens a channel to the first
//! partner in ROOM, says hello, prints the answer and leaves; `hello ... --answer` waits for a
//! partner and answers each message with "hello back: " and the message.
//!
//! ```sh
//! cargo run --example hello -- ws://127.0.0.1:8080 demo --answer &
//! cargo run --example hello -- ws://127.0.0.1:8080 demo
//! ```

use natkit_peer::{Message, Options};

#[tokio::main]
async fn main() -> Result<(), natkit_peer::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let answer = args.iter().any(|a| a == "--answer");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--answer").collect();
    let [signal, room, rest @ ..] = &args[..] else {
        eprintln!("usage: hello ws://HOST:8080 ROOM [TOKEN] [--answer]");
        std::process::exit(2);
    };
    let session = natkit_peer::connect(Options {
        signal: vec![signal.to_string()],
        room: room.to_string(),
        token: rest.first().map(|t| t.to_string()),
        ..Default::default()
    })
    .await?;
    println!("joined {} as {}", session.room(), session.peer_id());
    let mut channel = session.channel(None).await?;
    println!(
        "connected to {} over {:?}",
        channel.peer_id(),
        channel.path()
    );
    if answer {
        while let Some(message) = channel.recv().await {
            println!("got {message:?}");
            channel
                .send(format!("hello back: {}", message.to_text_lossy()))
                .await?;
        }
        return Ok(());
    }
    channel.send("hello").await?;
    channel.send(Message::Binary(vec![0, 1, 2])).await?;
    if let Some(reply) = channel.recv().await {
        println!("got {reply:?}");
    }
    session.close().await.map_err(natkit_peer::Error::Failed)
}
