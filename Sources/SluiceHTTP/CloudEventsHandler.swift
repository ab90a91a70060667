import NIOCore
import SluiceConfig
import SluiceCore
import SluiceIngest

extension IngestHandler {
    /// CloudEvents 1.0 over HTTP (`api: cloudevents`): binary mode (`ce-*` headers, the body is
    /// the data), structured mode (`application/cloudevents+json`) and batched mode
    /// (`application/cloudevents-batch+json`, a result per event: a bad event fails alone). The
    /// answer is Sluice's own, as for any ingest route.
    func respondCloudEvents(
        to request: HTTPRequest, parameters: [String: String], body: inout RequestBody, facts: inout ExchangeFacts
    ) async -> HTTPResponse {
        let topic = self.config.topic.render(parameters)
        if let problem = self.pipeline.problem(topic: topic) {
            return .error(problem.code, message: problem.message)
        }
        let mode = CloudEvents.ContentMode(contentType: request.header("content-type"))
        if case .unsupportedFormat(let media) = mode {
            return .error(
                .unsupportedMediaType,
                message: "\(media): this route takes the JSON event format (application/cloudevents+json, application/cloudevents-batch+json) or binary mode")
        }
        let whole: ByteBuffer
        do {
            whole = try await self.readWholeBody(request, &body)
        } catch {
            switch error {
            case .tooLarge: return Self.bodyTooLarge(self.config.maxBodyBytes)
            case .unreadable: return .error(.bodyReadFailed, message: "could not read the request body")
            }
        }

        // Events: one, or a batch's worth where a bad one fails alone.
        let decoded: [Result<Event, IngestError>]
        do {
            switch mode {
            case .binary:
                let headers = request.head.headers.map { (name: $0.name, value: $0.value) }
                decoded = [.success(try CloudEvents.binary(headers: headers, contentType: request.header("content-type"), body: whole, encoding: self.config.cloudEventsEncoding))]
            case .structured:
                decoded = [.success(try CloudEvents.structured(whole, encoding: self.config.cloudEventsEncoding))]
            case .batch:
                decoded = try CloudEvents.batch(whole, encoding: self.config.cloudEventsEncoding, maxEvents: self.config.maxEvents)
            case .unsupportedFormat:
                decoded = []
            }
        } catch {
            return .error(error.code, message: error.message)
        }

        // Events over max_event_bytes fail alone in a batch (the session's rule; with a
        // dead_letter they are dead-lettered there); a single event's problem is the answer.
        let maxEventBytes = self.config.maxEventBytes
        let refusesLargeEvents = self.pipeline.deadLetterSink == nil
        let items: [Result<Event, IngestError>] = decoded.map { result in
            result.flatMap { event in
                refusesLargeEvents && event.size > maxEventBytes
                    ? .failure(IngestError(.eventTooLarge, "the event is \(event.size) bytes, more than max_event_bytes (\(maxEventBytes))"))
                    : .success(event)
            }
        }
        if items.count == 1, case .failure(let error) = items[0] {
            return .error(error.code, message: error.message)
        }
        let defaultKey = self.pipeline.defaultKey(parameters)
        // headers_to_kafka go beside each event's own ce_ headers, so the session adds none.
        let routeHeaders = self.recordHeaders(request)
        var session = self.pipeline.session(
            topic: topic, requestKey: self.requestKey(request) ?? defaultKey, defaultKey: defaultKey, headers: [], ack: self.config.ack)
        await session.send(
            inOrder: items.map { item in
                item.mapError(\.deliveryFailure).map { event in
                    var event = event
                    event.headers.append(contentsOf: routeHeaders)
                    return event
                }
            })
        return await self.answer(session, stop: nil, request: request, facts: &facts)
    }
}
