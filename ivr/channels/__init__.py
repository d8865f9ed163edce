"""The control plane's side of each channel: implementations of `ivr.flow.channel.Channel`.

Channels depend on the flow engine and the conversation, never the reverse.
"""
