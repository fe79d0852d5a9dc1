#include "CWeftLinux.h"
