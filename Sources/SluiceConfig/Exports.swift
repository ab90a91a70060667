// The schema's values (addresses, sizes, templates, errors) are the reader's types: a module
// that uses the configuration sees them without importing the reader itself.
@_exported import SluiceConfigReader
