public enum WeftDataPathPlaceholder {}
