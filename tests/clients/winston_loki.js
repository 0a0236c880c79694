// Logs through winston with the winston-loki transport to a Loki push endpoint.
//
// usage: node winston_loki.js URL protobuf|json
// protobuf is the transport's default (snappy-compressed protobuf); json sends JSON with the
// log's meta as structured metadata. Exits 0 once the transport has flushed, 1 on a send error.
const path = require('path')
const modules = path.join(__dirname, 'node_modules')
const winston = require(path.join(modules, 'winston'))
const LokiTransport = require(path.join(modules, 'winston-loki'))

const [url, format] = process.argv.slice(2)
let failed = false
const transport = new LokiTransport({
  host: url,
  json: format === 'json',
  labels: { app: 'storefront', format },
  batching: true,
  interval: 0.2,
  gracefulShutdown: false,
  onConnectionError: (error) => {
    failed = true
    console.error('send failed:', error && error.message)
  }
})
const logger = winston.createLogger({ transports: [transport] })
logger.info('cart 7 checked out', { trace_id: 'aa11bb22cc33dd44' })
logger.warn('stock low for sku 42')
transport.flush().then(() => {
  process.exit(failed ? 1 : 0)
}, (error) => {
  console.error('flush failed:', error)
  process.exit(1)
})
