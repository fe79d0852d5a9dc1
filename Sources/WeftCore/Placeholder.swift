public enum WeftCorePlaceholder {}
