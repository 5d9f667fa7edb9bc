"""What crosses the network: the protobuf schema (`proto/`), the one protobuf <-> domain converter
(`serde`), the chunk codec and safetensors (`tensors`). Protobuf types do not leave this folder and the
servicers and stubs that call it.
"""
