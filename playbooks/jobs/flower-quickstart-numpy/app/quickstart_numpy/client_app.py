"""The ClientApp: a few gradient steps on this node's partition (node config partition-id)."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from quickstart_numpy.task import load_data, train

app = ClientApp()


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    x, y = load_data(int(context.node_config["partition-id"]))
    w, b, loss = train(w, b, x, y, int(context.run_config["local-steps"]), float(context.run_config["lr"]))
    content = RecordDict({"arrays": ArrayRecord([w, b]),
                          "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)})})
    return Message(content=content, reply_to=msg)
