public enum WeftLinuxPlaceholder {}
