import FileSink
import KafkaSink
import KinesisSink
import SluiceConfigReader
import ZerobusSink

/// Every kind of sink the executable registers (Sources/sluice/Sluice.swift): the configs under
/// test use them all.
let allSinkKinds: [SinkKind] = [KafkaSink.kind, FileSink.kind, KinesisSink.kind, ZerobusSink.kind]
